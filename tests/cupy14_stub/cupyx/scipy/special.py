"""Stand-in for ``cupyx.scipy.special`` (imported by Chainer, not used on our path)."""
