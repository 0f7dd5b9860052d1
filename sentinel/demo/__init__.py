"""A small estate of real services on loopback addresses, for `sentinel demo` and the tests."""
