"""normpipe pipeline: configuration, CLI and Beam wiring of the components."""
