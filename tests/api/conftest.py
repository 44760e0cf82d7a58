from tests.resolvers.world import api, world  # noqa: F401 - shared fixtures
