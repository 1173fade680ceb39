"""Architectures, one family per module; importing this package registers them all."""

from edgehemo.train.zoo import cnn, hemonet, literature, vgg

__all__ = ["cnn", "hemonet", "literature", "vgg"]
