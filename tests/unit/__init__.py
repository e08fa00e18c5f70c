"""Unit tests: pure logic, canned inputs, no servers."""
