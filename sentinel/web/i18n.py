"""Page labels in Chinese and English, and findings' rule text (title, remediation) in the page's language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from markupsafe import Markup

from sentinel.reports.text import FindingText, finding_text, rich_html

if TYPE_CHECKING:
    from sentinel.engine.rule import Rule

LANGUAGES = ("zh", "en")

_LABELS: dict[str, dict[str, str]] = {
    "title": {"zh": "Sentinel 网络安全态势感知", "en": "Sentinel situational awareness"},
    "overview": {"zh": "总览", "en": "Overview"},
    "alerts": {"zh": "告警", "en": "Alerts"},
    "systems": {"zh": "系统", "en": "Systems"},
    "system": {"zh": "系统", "en": "System"},
    "tier": {"zh": "层级", "en": "Tier"},
    "department": {"zh": "责任部门", "en": "Department"},
    "up": {"zh": "正常", "en": "Up"},
    "down": {"zh": "不可达", "en": "Down"},
    "unknown": {"zh": "未知", "en": "Unknown"},
    "open_findings": {"zh": "未处理问题", "en": "Open findings"},
    "certs_expiring": {"zh": "证书即将过期", "en": "Certificates expiring"},
    "newest_critical": {"zh": "最新严重问题", "en": "Newest critical findings"},
    "trend": {"zh": "近14天趋势", "en": "Trend, last 14 days"},
    "new": {"zh": "新增", "en": "New"},
    "resolved": {"zh": "已解决", "en": "Resolved"},
    "severity": {"zh": "严重性", "en": "Severity"},
    "status": {"zh": "状态", "en": "Status"},
    "finding": {"zh": "问题", "en": "Finding"},
    "target": {"zh": "目标", "en": "Target"},
    "first_seen": {"zh": "首次发现", "en": "First seen"},
    "last_seen": {"zh": "最近发现", "en": "Last seen"},
    "occurrences": {"zh": "次数", "en": "Seen"},
    "filter": {"zh": "筛选", "en": "Filter"},
    "search": {"zh": "搜索", "en": "Search"},
    "all": {"zh": "全部", "en": "All"},
    "acknowledge": {"zh": "确认", "en": "Acknowledge"},
    "suppress": {"zh": "屏蔽", "en": "Suppress"},
    "stale": {"zh": "无法确认，最后确认于", "en": "not confirmed; last confirmed at"},
    "accept_baseline": {"zh": "接受为新基线", "en": "Accept as baseline"},
    "reason": {"zh": "原因", "en": "Reason"},
    "until": {"zh": "截止日期", "en": "Until"},
    "remediation": {"zh": "整改建议", "en": "Remediation"},
    "evidence": {"zh": "证据", "en": "Evidence"},
    "history": {"zh": "处理记录", "en": "History"},
    "observations": {"zh": "观测数据", "en": "Observations"},
    "owner": {"zh": "负责人", "en": "Owner"},
    "mlps_level": {"zh": "等保级别", "en": "MLPS level"},
    "login": {"zh": "登录", "en": "Sign in"},
    "logout": {"zh": "退出", "en": "Sign out"},
    "token": {"zh": "访问令牌", "en": "Access token"},
    "bad_token": {"zh": "令牌无效", "en": "Invalid token"},
    "signed_in_as": {"zh": "当前用户", "en": "Signed in as"},
    "no_findings": {"zh": "没有符合条件的问题。", "en": "No findings match."},
    "by_tier": {"zh": "按层级", "en": "By tier"},
    "by_department": {"zh": "按部门", "en": "By department"},
    "done": {"zh": "已记录", "en": "Recorded"},
    "forbidden": {"zh": "无权执行此操作", "en": "You may not do this"},
    "city": {"zh": "市级", "en": "City"},
    "district": {"zh": "区级", "en": "District"},
    "street": {"zh": "街镇", "en": "Street/town"},
    "open": {"zh": "未处理", "en": "Open"},
    "acknowledged": {"zh": "已确认", "en": "Acknowledged"},
    "suppressed": {"zh": "已屏蔽", "en": "Suppressed"},
    "active": {"zh": "未关闭", "en": "Active"},
    "critical": {"zh": "严重", "en": "Critical"},
    "high": {"zh": "高", "en": "High"},
    "medium": {"zh": "中", "en": "Medium"},
    "low": {"zh": "低", "en": "Low"},
    "info": {"zh": "提示", "en": "Info"},
    "actor": {"zh": "操作人", "en": "Actor"},
    "when": {"zh": "时间", "en": "When"},
    "kind": {"zh": "类型", "en": "Kind"},
    "observed_at": {"zh": "观测时间", "en": "Observed"},
    "findings_shown": {"zh": "符合条件的问题", "en": "Findings shown"},
    "rectified": {"zh": "已整改待复核", "en": "Rectified, awaiting verification"},
    "rectify": {"zh": "登记整改", "en": "Record rectification"},
    "note": {"zh": "整改说明", "en": "What was done"},
    "planned": {"zh": "计划完成日期", "en": "Planned date"},
    "recheck": {"zh": "立即复核", "en": "Re-check now"},
    "trend_active": {"zh": "未关闭问题（按严重性，近14天）", "en": "Active findings by severity, last 14 days"},
    "availability": {"zh": "可用性（按层级）", "en": "Availability by tier"},
    "estate": {"zh": "各部门态势（按层级）", "en": "Departments by tier"},
    "changes_24h": {"zh": "近24小时变化", "en": "Changed in the last 24 h"},
    "new_total": {"zh": "新增问题", "en": "New findings"},
    "new_exposures": {"zh": "新暴露面", "en": "New exposures"},
    "newly_open_ports": {"zh": "新开放端口", "en": "Newly open ports"},
    "certs_14d": {"zh": "14天内到期证书", "en": "Certificates expiring within 14 days"},
    "defacements": {"zh": "网页篡改", "en": "Defacements"},
    "hidden_links": {"zh": "暗链", "en": "Hidden links"},
    "reopened": {"zh": "复现", "en": "Came back"},
    "top_risks": {"zh": "风险最高的系统", "en": "Top risks"},
    "score": {"zh": "风险分", "en": "Score"},
    "freshness": {"zh": "数据新鲜度", "en": "Data freshness"},
    "probe": {"zh": "探测", "en": "Probe"},
    "last_run": {"zh": "最近完成", "en": "Last completed"},
    "oldest": {"zh": "最旧观测", "en": "Oldest reading"},
    "targets": {"zh": "目标数", "en": "Targets"},
    "errors": {"zh": "无法观测", "en": "Could not observe"},
    "stale_findings": {"zh": "无法确认的问题", "en": "Findings not confirmed lately"},
    "sweeps_running": {"zh": "进行中的扫描", "en": "Sweeps in progress"},
    "jobs": {"zh": "任务", "en": "Jobs"},
    "live": {"zh": "实时", "en": "Live"},
    "updated_at": {"zh": "更新于", "en": "Updated"},
    "prev": {"zh": "上一页", "en": "Previous"},
    "next": {"zh": "下一页", "en": "Next"},
    "page": {"zh": "页", "en": "Page"},
    "of": {"zh": "共", "en": "of"},
    "rule": {"zh": "规则", "en": "Rule"},
    "category": {"zh": "类别", "en": "Category"},
    "age": {"zh": "发现时间", "en": "Age"},
    "age_24h": {"zh": "24小时内", "en": "Last 24 h"},
    "age_7d": {"zh": "7天内", "en": "Last 7 days"},
    "age_30d": {"zh": "30天内", "en": "Last 30 days"},
    "age_older30d": {"zh": "30天以前", "en": "Older than 30 days"},
    "sort": {"zh": "排序", "en": "Sort"},
    "sort_severity": {"zh": "按严重性", "en": "Most severe"},
    "sort_newest": {"zh": "最新", "en": "Newest"},
    "sort_oldest": {"zh": "最早", "en": "Oldest"},
    "sort_last_seen": {"zh": "最近发现", "en": "Last seen"},
    "due": {"zh": "整改期限", "en": "Due"},
    "overdue": {"zh": "已超期", "en": "Overdue"},
    "overdue_only": {"zh": "仅超期", "en": "Overdue only"},
    "stale_only": {"zh": "仅无法确认", "en": "Not confirmed only"},
    "contact": {"zh": "联系方式", "en": "Contact"},
    "sla": {"zh": "整改时限（天）", "en": "SLA (days)"},
    "no_overdue": {"zh": "没有超期问题。", "en": "Nothing is overdue."},
    "show_all": {"zh": "含已关闭", "en": "Include closed"},
    "more_closed": {"zh": "个已关闭问题未显示", "en": "closed findings not shown"},
    "none": {"zh": "无问题", "en": "Clear"},
    "escalation": {"zh": "超期督办", "en": "Overdue escalation"},
    "total": {"zh": "合计", "en": "Total"},
    "fields": {"zh": "字段", "en": "Fields"},
    "open_systems": {"zh": "系统数", "en": "Systems"},
    # the city's estate pages (sentinel/web/estate.py)
    "estate_view": {"zh": "全市态势", "en": "Estate"},
    "estate_findings": {"zh": "全市问题清单", "en": "Estate findings"},
    "estate_source": {"zh": "数据来源：共享 Elasticsearch 集群", "en": "Read from the shared Elasticsearch cluster"},
    "estate_totals": {"zh": "全市合计", "en": "Whole estate"},
    "site": {"zh": "站点（区）", "en": "Site"},
    "all_sites": {"zh": "全部站点", "en": "All sites"},
    "vantage": {"zh": "监测视角", "en": "Vantage"},
    "internet": {"zh": "互联网", "en": "Internet"},
    "extranet": {"zh": "政务外网", "en": "Extranet"},
    "internal": {"zh": "内网", "en": "Internal"},
    "systems_affected": {"zh": "涉及系统", "en": "Systems affected"},
    "newest_data": {"zh": "最新数据", "en": "Newest data"},
    "site_live": {"zh": "正常上报", "en": "Reporting"},
    "site_silent": {"zh": "数据中断", "en": "Silent"},
    "site_no_data": {"zh": "尚未上报", "en": "Nothing shipped yet"},
    "estate_down": {"zh": "Elasticsearch 集群无法访问", "en": "The Elasticsearch cluster cannot be read"},
    "since": {"zh": "起始于", "en": "since"},
    "estate_by_site": {"zh": "按站点分组", "en": "By site"},
    "estate_bad_request": {"zh": "无法显示此页", "en": "This page cannot be shown"},
}


class Translator(dict[str, str]):
    """The labels of one language (`t.key`, `t[key]`), plus a finding's title and remediation in that language
    (`t.finding_title(f)`, `t.finding_fix(f)`): the rule's `title_zh`/`remediation_zh` looked up by rule id
    (sentinel.reports.text.finding_text), as HTML with `code` marked up, never as raw backticks."""

    def __init__(self, lang: str, labels: Mapping[str, str], rules: Mapping[str, Rule] | None = None) -> None:
        super().__init__(labels)
        self._lang = lang
        self._rules = rules

    def finding_title(self, finding: FindingText) -> Markup:
        return rich_html(finding_text(finding, "title", self._lang, self._rules))

    def finding_fix(self, finding: FindingText) -> Markup:
        return rich_html(finding_text(finding, "remediation", self._lang, self._rules))


def translator(lang: str, rules: Mapping[str, Rule] | None = None) -> Translator:
    """`rules`: the rule set the findings came from (rule id → Rule); default: the shipped rules."""
    lang = lang if lang in LANGUAGES else "zh"
    return Translator(lang, {key: texts[lang] for key, texts in _LABELS.items()}, rules)
