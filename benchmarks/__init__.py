"""Speed benchmarks; they read ../shared and print tables (tests never time anything)."""
