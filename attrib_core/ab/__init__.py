"""A/B: two versions of the code (or two environments, or two settings) timed on one machine in one
window, interleaved in ABBA blocks by long-lived worker processes (session.py, sides.py,
worker.py); regress.py is the regression gate over it and over committed baselines."""
