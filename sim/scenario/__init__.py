"""The scenario language: the YAML document, its sections, assertions and reference."""
