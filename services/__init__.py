"""The service layer: what the starter, the API and the operators' tool do with dossiers."""
