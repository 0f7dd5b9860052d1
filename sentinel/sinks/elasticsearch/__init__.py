"""Elasticsearch sink: ECS documents shipped through a transactional outbox in the embedded store.

Import from the submodules (this package stays import-free so `sentinel.config.settings` can use
`settings.ElasticsearchSettings` without an import cycle):

* `outbox.install_outbox(store, settings)`: queue findings/observations in the store's write transaction;
  `outbox.outbox_stats(store)`: depth, age and counters for metrics.
* `shipper.Shipper(store, client, es).drain()`: ship the queue with streaming_bulk.
* `setup.Installer(client, es).install()`: ILM policy, templates, latest-state index, data streams.
* `client.build_client(es)`, `settings.elasticsearch_settings(settings)`, `schema.OUTBOX`.
"""
