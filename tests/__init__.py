"""ganspec's test suite. A package so that test modules and tests.helpers import by their full names."""
