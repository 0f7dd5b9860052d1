"""Early warnings (预警通报): a warning one site issues and every site matches against its own observations.

A warning is a match expression over observations, in the rule language, with a severity and a deadline.
Each instance turns the warnings it holds into rules (`Advisory.to_rule`), so the affected systems get
findings through the one ingest path, with owners notified as for any finding; the progress table
(`progress.by_site`) is read from those findings, per site.
"""

from sentinel.advisories.model import ADVISORY_RULE_PREFIX, Advisory, advisory_of_rule
from sentinel.advisories.progress import SiteProgress, by_site

__all__ = ["ADVISORY_RULE_PREFIX", "Advisory", "SiteProgress", "advisory_of_rule", "by_site"]
