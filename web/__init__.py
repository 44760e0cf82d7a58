"""The HTTP edge: authentication, rate limits, the response cache, metrics, health,
access logging, the GraphQL endpoint, the REST compatibility routes and the exports."""
