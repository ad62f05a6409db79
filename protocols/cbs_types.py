"""CBS service types (protocol section 3): BMW's ``CBSKENNUNG`` codes and our names.

A code we do not know is kept and named ``unknown``; it never rejects a session.
"""

from __future__ import annotations

import enum


class CbsType(enum.StrEnum):
    ENGINE_OIL = "engine_oil"
    BRAKE_PADS_FRONT = "brake_pads_front"
    BRAKE_FLUID = "brake_fluid"
    MICROFILTER = "microfilter"
    BRAKE_PADS_REAR = "brake_pads_rear"
    PARTICULATE_FILTER = "particulate_filter"
    BATTERY = "battery"
    TRANSFER_CASE_OIL = "transfer_case_oil"
    SPARK_PLUGS_ADAPTIVE = "spark_plugs_adaptive"
    NOX_ADDITIVE = "nox_additive"
    SPARK_PLUGS = "spark_plugs"
    VEHICLE_CHECK = "vehicle_check"
    COOLANT = "coolant"
    PRE_DELIVERY_INSPECTION = "pre_delivery_inspection"
    RUNNING_IN_CHECK = "running_in_check"
    PARTICULATE_FILTER_ADDITIVE = "particulate_filter_additive"
    STATUTORY_INSPECTION = "statutory_inspection"
    EMISSION_INSPECTION = "emission_inspection"
    TRANSMISSION_OIL = "transmission_oil"
    TYRE_AGE = "tyre_age"
    CLUTCH = "clutch"
    SHOCK_ABSORBERS = "shock_absorbers"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> CbsType:
        return cls.UNKNOWN

    @classmethod
    def from_code(cls, code: int) -> CbsType:
        """The type of a ``CbsType`` code; ``UNKNOWN`` for codes outside the table."""
        return CODE_TO_TYPE.get(code, cls.UNKNOWN)


CODE_TO_TYPE: dict[int, CbsType] = {
    0x01: CbsType.ENGINE_OIL,
    0x02: CbsType.BRAKE_PADS_FRONT,
    0x03: CbsType.BRAKE_FLUID,
    0x04: CbsType.MICROFILTER,
    0x06: CbsType.BRAKE_PADS_REAR,
    0x07: CbsType.PARTICULATE_FILTER,
    0x08: CbsType.BATTERY,
    0x09: CbsType.TRANSFER_CASE_OIL,
    0x0A: CbsType.SPARK_PLUGS_ADAPTIVE,
    0x0D: CbsType.NOX_ADDITIVE,
    0x10: CbsType.SPARK_PLUGS,
    0x11: CbsType.VEHICLE_CHECK,
    0x12: CbsType.COOLANT,
    0x14: CbsType.PRE_DELIVERY_INSPECTION,
    0x15: CbsType.RUNNING_IN_CHECK,
    0x16: CbsType.PARTICULATE_FILTER_ADDITIVE,
    0x20: CbsType.STATUTORY_INSPECTION,
    0x21: CbsType.EMISSION_INSPECTION,
    0x23: CbsType.TRANSMISSION_OIL,
    0x31: CbsType.TYRE_AGE,
    0x32: CbsType.CLUTCH,
    0x37: CbsType.SHOCK_ABSORBERS,
}
TYPE_TO_CODE: dict[CbsType, int] = {t: c for c, t in CODE_TO_TYPE.items()}
