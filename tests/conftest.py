pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.containers",
    "tests.fixtures.engine",
    "tests.fixtures.secrets",
    "tests.fixtures.repos",
]
