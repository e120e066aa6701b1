"""Stand-in for ``cupyx.scipy.linalg`` (imported by Chainer, not used on our path)."""
