"""Anomaly detectors behind one scikit-learn-style interface (see ``base.Detector``)."""
