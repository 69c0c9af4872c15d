"""Chinese and English labels of the console's pages and charts (``lang`` cookie or ``?lang=zh|en``; default from
the browser's Accept-Language). Region names for the GB/T 2260 codes the demo uses; other codes show as codes."""

from __future__ import annotations

__all__ = ["LABELS", "LANGS", "label", "region_name"]

LANGS = ("zh", "en")

LABELS: dict[str, tuple[str, str]] = {  # key: (en, zh)
    "title": ("CEMS review console", "CEMS 审核平台"),
    "overview": ("Overview", "总览"), "alerts": ("Alerts", "预警"), "entities": ("Entities", "重点排放单位"),
    "login": ("Log in", "登录"), "logout": ("Log out", "退出"), "username": ("User name", "用户名"),
    "password": ("Password", "密码"), "role": ("Role", "角色"),
    "plant": ("plant", "企业"), "municipal": ("municipal reviewer", "市级审核"),
    "provincial": ("provincial reviewer", "省级审核"), "national": ("national reviewer", "国家级审核"),
    "admin": ("administrator", "管理员"),
    "region": ("Region", "地区"), "province": ("Province", "省"), "municipality": ("Municipality", "市"),
    "entity": ("Entity", "单位"), "month": ("Month", "月份"), "severity": ("Severity", "严重程度"),
    "rule": ("Rule", "规则"), "state": ("State", "状态"), "deviation": ("Deviation", "偏差"),
    "explanation": ("Explanation", "说明"), "filter": ("Filter", "筛选"), "all": ("all", "全部"),
    "critical": ("critical", "严重"), "warning": ("warning", "警告"), "info": ("info", "提示"),
    "cleared": ("cleared", "已解除"),
    "open": ("open", "待处理"), "acknowledged": ("acknowledged", "已确认"), "dismissed": ("dismissed", "已驳回"),
    "finding": ("finding", "审核发现"),
    "acknowledge": ("Acknowledge", "确认"), "dismiss": ("Dismiss", "驳回"),
    "make_finding": ("Make a finding", "列为审核发现"),
    "in_time": ("on time", "按时"), "late": ("late", "逾期"), "missing": ("missing", "未报"), "due": ("due", "待报"),
    "open_alerts": ("open alerts", "未处理预警"),
    "municipal_review": ("municipal review", "市级审核中"), "provincial_review": ("provincial review", "省级审核中"),
    "national_review": ("national review", "国家级审核中"), "returned": ("returned to the plant", "退回企业"),
    "accepted": ("accepted", "审核通过"),
    "cems_co2": ("CEMS CO2", "CEMS 监测 CO2"), "calculated_co2": ("calculated CO2", "核算 CO2"),
    "tolerance": ("tolerance band", "允许偏差范围"), "t": ("t", "吨"),
    "hourly_co2": ("Hourly CO2", "小时 CO2 排放"), "local_time": ("local time", "当地时间"),
    "kg": ("kg", "千克"), "hours_heatmap": ("Hours by status", "小时数据状态"),
    "valid": ("valid", "有效"), "substituted": ("substituted", "替代"), "stopped": ("stopped", "停运"),
    "out_of_control": ("out of control", "失控"), "no_record": ("no record", "无记录"),
    "day": ("day", "日"), "hour": ("hour", "时"),
    "measured_co2": ("measured", "实测"), "substituted_co2": ("substituted", "替代"),
    "hours": ("hours", "小时"), "completeness": ("completeness", "数据完整率"),
    "evidence": ("Evidence", "支撑材料"), "category": ("Category", "类别"), "file": ("File", "文件"),
    "size": ("Size", "大小"), "deposited_by": ("Deposited by", "提交人"), "at": ("At", "时间"),
    "accounting_report": ("accounting report", "核算报告"), "lab_report": ("lab report", "化验报告"),
    "weighbridge_ticket": ("weighbridge ticket", "过磅单"), "invoice": ("invoice", "发票"),
    "sampling_record": ("sampling record", "采样记录"), "other": ("other", "其他"),
    "deposit": ("Deposit a file", "上传材料"), "upload": ("Upload", "上传"),
    "submit": ("Submit the month", "提交本月"),
    "correction_reason": ("Reason (needed for a correction)", "原因（更正时必填）"),
    "reason": ("Reason", "原因"), "review": ("Review", "审核"), "accept": ("Accept", "通过"),
    "escalate": ("Escalate", "上报"), "return": ("Return to the plant", "退回企业"),
    "history": ("Review history", "审核记录"), "by": ("By", "操作人"), "action": ("Action", "操作"),
    "deadline": ("Deadline", "截止时间"), "days_left": ("days left", "天后截止"),
    "overdue": ("overdue", "已逾期"), "submitted": ("submitted", "已提交"), "version": ("Version", "版本"),
    "parameters": ("Key parameters of the month", "本月关键参数"), "parameter": ("Parameter", "参数"),
    "item": ("Item", "项"), "value": ("Value", "数值"), "unit": ("Unit", "单位"), "basis": ("Basis", "来源"),
    "measured": ("measured", "实测"), "default": ("default", "缺省值"),
    "comparison": ("CEMS against calculated CO2", "CEMS 监测与核算 CO2 对比"),
    "sources": ("Sources", "排放源"), "no_data": ("nothing yet", "暂无"),
    "months": ("Months", "月份"), "archive_versions": ("Archived figures", "归档数据"),
    "hash": ("Hash", "哈希"), "whole_month": ("whole month", "全月"),
    "reported_calc": ("calculated from the deposited report", "按所交报告核算"),
    "language": ("中文", "English"), "not_found": ("Not found", "未找到"),
    "error": ("Error", "错误"), "done": ("Done", "已完成"), "alerts_of_month": ("Alerts of the month", "本月预警"),
    "select_evidence": ("Files in this version", "本版本包含的文件"), "download": ("download", "下载"),
    "status_by_region": ("Entities by deadline status", "按截止状态统计"),
    "alerts_by_region": ("Open alerts by region and severity", "按地区与严重程度统计的预警"),
    "from": ("From", "原状态"), "to": ("To", "新状态"), "escalated": ("escalated", "已上报"),
    "submission": ("submission", "提交"),
    "nothing_to_do": ("No action for your role in this state.", "当前状态下无可执行操作。"),
}


def label(key: str, lang: str) -> str:
    pair = LABELS.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "zh" else pair[0]


_REGIONS = {"320000": ("Jiangsu", "江苏省"), "320100": ("Nanjing", "南京市"), "320500": ("Suzhou", "苏州市"),
            "150000": ("Inner Mongolia", "内蒙古自治区"), "150200": ("Baotou", "包头市")}


def region_name(code: str, lang: str) -> str:
    pair = _REGIONS.get(code)
    return code if pair is None else f"{pair[1] if lang == 'zh' else pair[0]} ({code})"
