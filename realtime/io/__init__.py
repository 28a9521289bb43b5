"""Input and output by medium: video files (PyAV), cameras, images, results files, the window."""
