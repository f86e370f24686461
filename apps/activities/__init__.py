"""The activity types a campaign graph is made of: one module per type, registered by key."""
