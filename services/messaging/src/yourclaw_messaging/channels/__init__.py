"""Delivery per channel, behind `base.Channel`."""
