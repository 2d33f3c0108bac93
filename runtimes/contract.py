"""OpenWhisk's action container contract in one place: routes, status codes, env prefix, sentinel.

Source of truth: apache/openwhisk docs/actions-new.md, the official Python runtime's launcher and
the action proxy it runs under (apache/openwhisk-runtime-go).
"""

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
ENV_PREFIX = "__OW_"

INIT_PATH = "/init"
RUN_PATH = "/run"

OK = 200
BAD_REQUEST = 400
FORBIDDEN = 403
INTERNAL_ERROR = 500
BAD_GATEWAY = 502

ERR_REINIT = "Cannot initialize the action more than once."
ERR_NOT_INITIALIZED = "no action defined yet"
ERR_EXITED = "command exited"
ERR_NOT_DICT_ARG = "The action did not receive a dictionary as an argument."
ERR_NOT_DICT_RESULT = "The action did not return a dictionary or array."
ERR_NO_CODE = "Missing main/no code to execute."
