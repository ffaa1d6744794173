"""Sources: one module per platform, each turning one endpoint's response into a `PollResult`."""
