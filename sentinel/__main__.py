from sentinel.cli.main import entrypoint

entrypoint()
