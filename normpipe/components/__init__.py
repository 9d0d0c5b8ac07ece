"""normpipe components: one module per stage."""
