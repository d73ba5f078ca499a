"""What each chat platform documents about its group robots, in one place, with where it says so.

Rate limits, the wait after a throttling answer, request sizes and answer codes are the platforms' own
figures, verified against their documentation (read through the copies named where the original page was
not reachable). They are defaults: an operator's ``rate_limit`` adds windows, it never loosens these.

* DingTalk custom robot (自定义机器人), https://open.dingtalk.com/document/robots/custom-robot-access:
  "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟" (copies: blog.csdn.net/lxw1844912514/
  article/details/125780346, cnblogs.com/Fogram-c/p/16992729.html). The throttling answer is errcode 130101
  "send too fast, exceed 20 times per minute" (blog.csdn.net/jialiuyang/article/details/118615052). 310000
  is a security refusal: keyword missing ("keywords not in content"), bad signature ("sign not match"), IP not
  allowed (told apart by its errmsg). DingTalk's global codes name -1 "系统繁忙" as try-again-later. The 20,000-byte request cap is not in
  the pages we could read: it is kept as a conservative bound of our own.
* WeCom group robot (群机器人), https://developer.work.weixin.qq.com/document/path/91770 (also
  work.weixin.qq.com/api/doc/90000/90136/91770): "每个机器人发送的消息不能超过20条/分钟"; text content "最长不超过
  2048个字节", markdown content "最长不超过4096个字节" (UTF-8); ``<@userid>`` mentions in text and markdown;
  ``mentioned_list`` with "@all" in text messages only. 45009 "api freq out of limit" and -1 "系统繁忙" are
  WeCom global codes (全局错误码; copy: static.kancloud.cn/dabashan/qiwei/2376083). WeCom names no lock after
  45009: the window (a minute) is waited out.
* Feishu custom bot (自定义机器人), https://open.larkoffice.com/document/ukTMukTMukTM/ucTM5YjL3ETO24yNxkjN:
  "单租户单机器人 100 次/分钟，5 次/秒 … 11232 限流错误"; "请求体的数据大小不能超过 20 KB"; keyword, IP allow-list
  and signature security. Its rate-limit guide (open.feishu.cn/document/server-docs/api-call-guide/
  frequency-control) adds that either window's limit throttles, and that a throttled answer may carry
  ``x-ogw-ratelimit-reset`` (seconds) and code 99991400. Codes 19021 (signature or timestamp, "sign match fail
  or timestamp is not within one hour"), 19024 ("Key Words Not Found") and 9499 (bad request) are refusals of
  the message, not throttling.
* Slack incoming webhooks, https://api.slack.com/docs/rate-limits: "Posting messages: 1 per second; short
  bursts >1 allowed", 429 with ``Retry-After``. Errors (api.slack.com/changelog/2016-05-17-changes-to-errors-
  for-incoming-webhooks): 400 invalid_payload, 403 action_prohibited, 404 channel_not_found, 410
  channel_is_archived, 500 rollup_error. Block Kit: a section's text at most 3,000 characters, a header's 150,
  at most 50 blocks; ``text`` is cut at 40,000 characters. Messages whose blocks add up to about 13,000
  characters are refused with msg_blocks_too_long though no single documented limit is reached
  (github.com/slackapi/bolt-js/issues/2509): our budget for all blocks together is 12,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max_messages`` sends in any ``window_seconds`` (60: "per minute")."""

    max_messages: int
    window_seconds: float = 60.0

    @property
    def reserve(self) -> int:
        """Sends of each window that routine messages leave to urgent ones (lane incidents, critical issues), so
        an incident finds a free slot even while routine alerts keep a robot busy."""
        return self.max_messages // 10

    @property
    def guarded_window(self) -> float:
        """The window as we count it: a little longer than the platform's (10 %, at least 0.25 s, at most 2 s),
        so the time between taking a slot and the request's arrival (network, a busy worker) cannot squeeze
        two of our windows' sends into one of the platform's."""
        return self.window_seconds + min(2.0, max(0.25, self.window_seconds * 0.1))


# Why a message was refused for good: bounded metric labels.
REFUSAL_REASONS = ("bad_request", "too_large", "keyword", "signature", "ip_not_allowed", "not_found", "forbidden", "other")


@dataclass(frozen=True, slots=True)
class Vendor:
    """One platform's documented rules for its group robots."""

    limits: tuple[RateLimit, ...]
    # The wait after a throttling answer that names none: the platform's own penalty.
    penalty_seconds: float
    throttled: frozenset[int] = frozenset()
    # Answer codes that mean "the server's trouble, try again later".
    transient: frozenset[int] = frozenset()
    # Known codes of a message refused for good -> reason; any other non-zero code is refused for good too.
    refusals: Mapping[int, str] = field(default_factory=dict)


VENDORS: Mapping[str, Vendor] = {
    "dingtalk": Vendor(
        limits=(RateLimit(20, 60.0),), penalty_seconds=600.0, throttled=frozenset({130101}), transient=frozenset({-1}),
        refusals={310000: "keyword"},
    ),
    "wecom": Vendor(
        limits=(RateLimit(20, 60.0),), penalty_seconds=60.0, throttled=frozenset({45009}), transient=frozenset({-1}),
        refusals={40008: "bad_request"},
    ),
    "feishu": Vendor(
        limits=(RateLimit(5, 1.0), RateLimit(100, 60.0)), penalty_seconds=60.0, throttled=frozenset({11232, 99991400}),
        refusals={9499: "bad_request", 19021: "signature", 19024: "keyword"},
    ),
    "slack": Vendor(limits=(RateLimit(1, 1.0),), penalty_seconds=60.0),
}

# Message sizes, measured on what is sent.
DINGTALK_MAX_REQUEST_BYTES = 20_000  # the encoded request body
WECOM_MARKDOWN_MAX_BYTES = 4096  # markdown.content, UTF-8
WECOM_TEXT_MAX_BYTES = 2048  # text.content, UTF-8
FEISHU_MAX_REQUEST_BYTES = 20_000  # the encoded request body ("20 KB", read as the smaller of 20,000 and 20,480)
SLACK_SECTION_CHARS = 3000
SLACK_HEADER_CHARS = 150
SLACK_MAX_BLOCKS = 50
SLACK_BLOCKS_CHARS = 12_000
