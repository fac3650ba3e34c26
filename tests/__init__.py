"""CMM test suite: specifications of behaviour, on real data where it matters."""
