"""Passive traffic analysis: packet captures and live traffic turned into `traffic.*` observations.

Records are read in bulk (`capture`), only the header fields the detectors need are decoded with
numpy (`decode`), detectors aggregate them into a bounded flow table (`detectors`), and
`analyze.observations_from_pcap` hands measured values to the rule engine, which holds every
threshold and window.
"""
