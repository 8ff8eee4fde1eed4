"""crm-scorer monitor."""
