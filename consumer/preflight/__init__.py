"""Before a deployment takes traffic: every check ``crm-scorer check`` runs, one line each (``plan``, ``checks``,
``kafka_checks``), and the exit code of the first that fails (docs/exit-codes.md)."""
