"""One module per paper; each registers its variants in :mod:`chainer_nets.registry`."""
