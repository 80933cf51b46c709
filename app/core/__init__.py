"""What every layer shares: settings, the recipe contract, typed events, run statuses, domain errors."""
