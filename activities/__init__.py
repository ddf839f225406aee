"""Every side effect of the engine: registries, portal, fees, documents, notifications."""
