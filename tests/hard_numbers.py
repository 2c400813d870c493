"""Numbers that text formats get wrong: what line protocol must carry exactly."""

DOUBLES = [
    0.1,
    1 / 3,
    -0.0,
    5e-324,  # the smallest subnormal
    2.2250738585072014e-308,  # the smallest normal
    1.7976931348623157e308,
    1e-7,  # repr writes "1e-07", the shortest text "1e-7"
    -0.000019683967522378656,
    6.02214076e23,
    9007199254740993.0,  # 2**53 + 1 rounds to 2**53
    123.0,
]
