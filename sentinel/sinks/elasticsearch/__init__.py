"""Elasticsearch sink: ECS documents shipped through the shared sink outbox (`sentinel.sinks.outbox`).

* `sink.ElasticsearchSink`: encoding (latest / history / observations) and `_bulk` delivery.
* `outbox.install_outbox(store, settings)`, `outbox.outbox_stats(store)`: the Elasticsearch rows alone.
* `shipper.Shipper(store, client, es).drain()`: the generic shipper with this sink.
* `setup.Installer(client, es).install()`: ILM policy, templates, latest-state index, data streams.
* `client.build_client(es)`, `settings.elasticsearch_settings(settings)`, `schema.ES_OUTBOX`.
"""
