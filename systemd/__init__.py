"""The systemd unit templates, shipped as package data for `edgehemo service install`."""
