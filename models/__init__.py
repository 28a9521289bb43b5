"""The emotion CNN: FER2013 data loading, architecture, training and evaluation."""
