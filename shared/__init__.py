"""Typed core of the function app: settings, message contracts, storage, bus and endpoint adapters, pipeline logic."""
