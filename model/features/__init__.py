"""The two-phase side: feature extractors, the feature-table layout, the .csd importer and the feature loader."""
