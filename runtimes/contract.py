"""OpenWhisk's action container contract in one place: routes, status codes, env prefix, sentinel.

Source of truth: apache/openwhisk docs/actions-new.md and the official Python runtime.
"""

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
ENV_PREFIX = "__OW_"

INIT_PATH = "/init"
RUN_PATH = "/run"

OK = 200
BAD_REQUEST = 400
FORBIDDEN = 403
BAD_GATEWAY = 502

ERR_REINIT = "Cannot initialize the action more than once."
ERR_NOT_INITIALIZED = "Cannot invoke an uninitialized action."
ERR_NOT_DICT_ARG = "The action did not receive a dictionary as an argument."
ERR_NOT_DICT_RESULT = "The action did not return a dictionary."
ERR_NO_CODE = "Missing main/no code to execute."


def env_for_run(message: dict) -> dict[str, str]:
    """Every /run field except `value` becomes an `__OW_<KEY>` environment variable."""
    out = {}
    for key, val in message.items():
        if key == "value":
            continue
        out[ENV_PREFIX + key.upper()] = val if isinstance(val, str) else str(val)
    return out
