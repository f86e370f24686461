"""Approvals and tasks (DESIGN §7, §8): tasks a campaign waits on, who may decide them, decisions
and their immutable audit trail."""
