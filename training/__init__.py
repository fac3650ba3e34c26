"""Teacher feature extraction and student training for CMM (nothing here runs inside the strategy)."""
