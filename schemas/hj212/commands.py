"""HJ 212 code tables: system codes (ST), command codes (CN), execution results (ExeRtn), request answers (QnRtn).

The 2017 entries are from HJ 212-2017 Tables 5, 6, 7 and 9 (docs/sources.md HJ212-T5, -T6, -T7, -T9). The 2025
additions come from public implementations that quote HJ 212-2025, not from its text (HJ212-2025-CN, HJ212-2025-ST,
tagged [S]): a code absent here is not an error, the tables only name what a frame means in logs and docs.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CN", "DATA_UPLOADS", "EXE_RTN", "QN_RTN", "RESPONSES", "ST", "Command"]


class Command(NamedTuple):
    name: str
    since: str  # "2005", "2017" or "2025": the first edition known to define it here
    source: str  # docs/sources.md id


_17, _25 = "HJ212-T9", "HJ212-2025-CN"

#: CN -> meaning. Ranges: 1000-1999 initialisation and parameters, 2000-2999 data, 3000-3999 control,
#: 9000-9999 interaction (HJ212-T9).
CN: dict[str, Command] = {
    "1000": Command("set timeout and retry count", "2017", _17),
    "1001": Command("upload datalogger hardware serial number", "2025", _25),
    "1002": Command("set datalogger MN", "2025", _25),
    "1011": Command("get / upload site time", "2017", _17),
    "1012": Command("set site time", "2017", _17),
    "1013": Command("site time calibration request", "2017", _17),
    "1014": Command("key exchange (site asks / host sets a new SM4 key)", "2025", _25),
    "1061": Command("get / upload real-time data interval", "2017", _17),
    "1062": Command("set real-time data interval", "2017", _17),
    "1063": Command("get / upload minute data interval", "2017", _17),
    "1064": Command("set minute data interval", "2017", _17),
    "1072": Command("set site access password", "2017", _17),
    "2011": Command("real-time data (request / upload)", "2017", _17),
    "2012": Command("stop real-time data", "2017", _17),
    "2013": Command("raw monitoring data (request / upload)", "2025", _25),
    "2021": Command("equipment running state (request / upload)", "2017", _17),
    "2022": Command("stop equipment running state", "2017", _17),
    "2031": Command("daily history data", "2017", _17),
    "2041": Command("daily equipment running-time history", "2017", _17),
    "2051": Command("minute data", "2017", _17),
    "2052": Command("single noise measurement", "2025", _25),
    "2061": Command("hourly data", "2017", _17),
    "2062": Command("automatic standard-check (calibration) data", "2025", _25),
    "2081": Command("datalogger boot time", "2017", _17),
    "2111": Command("furnace temperature 5-min mean", "2025", _25),
    "3011": Command("zero / span calibration", "2017", _17),
    "3012": Command("immediate sampling", "2017", _17),
    "3013": Command("cleaning / blow-back", "2017", _17),
    "3014": Command("comparison sampling", "2017", _17),
    "3015": Command("over-limit sample retention", "2017", _17),
    "3016": Command("set sampling period", "2017", _17),
    "3017": Command("get sampling period", "2017", _17),
    "3018": Command("get sample output time", "2017", _17),
    "3019": Command("device unique identifier", "2017", _17),
    "3020": Command("site information (get / upload)", "2017", _17),
    "3021": Command("set site parameters", "2017", _17),
    "3022": Command("immediate sample-retention task", "2025", _25),
    "3024": Command("start standard check", "2025", _25),
    "9011": Command("request answer (QnRtn)", "2017", _17),
    "9012": Command("execution result (ExeRtn)", "2017", _17),
    "9013": Command("notification answer", "2017", _17),
    "9014": Command("data answer", "2017", _17),
    "9015": Command("heartbeat", "2025", _25),
}

#: Data uploads a site sends and the data answer (9014) acknowledges (HJ212-T9).
DATA_UPLOADS = frozenset({"2011", "2031", "2051", "2061"})
#: Answers and notifications (HJ212-T9; 9015 HJ212-2025-CN).
RESPONSES = frozenset({"9011", "9012", "9013", "9014", "9015"})

#: ST -> system (HJ212-T5; 27, 44, 45 from HJ212-2025-ST [S]). A0-Z9 are reserved for extensions.
ST: dict[str, str] = {
    "21": "surface water quality",
    "22": "air quality",
    "23": "acoustic environment quality",
    "24": "groundwater quality",
    "25": "soil quality",
    "26": "seawater quality",
    "27": "volatile organic compounds",
    "31": "atmospheric (flue-gas) pollution source",
    "32": "surface-water pollution source",
    "33": "groundwater pollution source",
    "34": "marine pollution source",
    "35": "soil pollution source",
    "36": "noise pollution source",
    "37": "vibration pollution source",
    "38": "radioactive pollution source",
    "39": "construction-site dust",
    "41": "electromagnetic pollution source",
    "44": "electricity-use monitoring",
    "45": "key production-condition monitoring",
    "51": "flue-gas process monitoring",
    "52": "wastewater process monitoring",
    "91": "system interaction",
}

#: ExeRtn -> meaning (HJ212-T6).
EXE_RTN: dict[int, str] = {
    1: "success",
    2: "failed, reason unknown",
    3: "request condition error",
    4: "communication timeout",
    5: "system busy",
    6: "system fault",
    100: "no data",
}

#: QnRtn -> meaning (HJ212-T7).
QN_RTN: dict[int, str] = {
    1: "ready to execute",
    2: "refused",
    3: "PW error",
    4: "MN error",
    5: "ST error",
    6: "Flag error",
    7: "QN error",
    8: "CN error",
    9: "CRC error",
    100: "unknown error",
}
