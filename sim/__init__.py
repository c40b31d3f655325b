"""mfg-twin's digital twin and harness: the `twin` command line."""
