"""Where data and outputs live: paths that may be URIs (`paths`)."""
