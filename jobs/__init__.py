"""The scheduled jobs that run inside the API process (or `fature etl worker`): the ETL
cycles and the monthly commission close, on APScheduler."""
