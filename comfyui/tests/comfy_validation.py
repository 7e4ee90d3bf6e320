"""A stand-in for how ComfyUI validates one node's inputs before it queues
a prompt (``validate_inputs`` in ComfyUI's execution.py), in the three ways
ComfyUI has called a node's VALIDATE_INPUTS and reported its failures.

Only what concerns the node's own inputs is reproduced: widget values are
converted (INT, FLOAT, STRING) and checked against INPUT_TYPES (min, max,
combo list) as ComfyUI does; linked inputs are taken as valid links whose
values are not known yet, which ComfyUI passes to VALIDATE_INPUTS as None.
Hidden inputs and input_types are left out (the framecast node has none).

- ALL_INPUTS, ComfyUI of 2023-09-07 to 2023-12-28: for each required input
  given as a widget value that passed conversion and min/max, VALIDATE_INPUTS
  is called with every input of the node (links as None) and a failure is
  reported under that input. ComfyUI does not check combo values of a node
  that has VALIDATE_INPUTS.
- NAMED, ComfyUI of 2023-12-28 to 2024-08: VALIDATE_INPUTS is called once,
  with the inputs that inspect.getfullargspec(VALIDATE_INPUTS).args names,
  and a failure is reported once under each of them. ComfyUI checks min/max
  of every input and the combo values of the inputs not named.
- NAMED_OR_KWARGS, ComfyUI of 2024-08 on: as NAMED, over required and
  optional inputs, but a **kwargs parameter names every input, and ComfyUI's
  own checks skip the named inputs.
"""

import inspect

ALL_INPUTS = "2023-09-07"
NAMED = "2023-12-28"
NAMED_OR_KWARGS = "2024-08"
CONVENTIONS = (ALL_INPUTS, NAMED, NAMED_OR_KWARGS)


def _is_link(value):
    return isinstance(value, list) and len(value) == 2


def _input_data(cls, inputs):
    """ComfyUI's get_input_data during validation: links as None, widget
    values of declared inputs, each as a list of one value."""
    declared = cls.INPUT_TYPES()
    known = set(declared.get("required", {})) | set(declared.get("optional", {}))
    data = {}
    for name, value in inputs.items():
        if _is_link(value):
            data[name] = (None,)
        elif name in known:
            data[name] = [value]
    return data


def _call(cls, data):
    """ComfyUI's map_node_over_list for VALIDATE_INPUTS: one call per list index."""
    if not data:
        return [cls.VALIDATE_INPUTS()]
    longest = max(len(v) for v in data.values())
    return [cls.VALIDATE_INPUTS(**{k: v[min(i, len(v) - 1)] for k, v in data.items()}) for i in range(longest)]


def _error(kind, name, details):
    return {"type": kind, "input_name": name, "details": details}


def _failures(results, name):
    """The errors ComfyUI reports under input name for VALIDATE_INPUTS' results."""
    out = []
    for r in results:
        if r is not True:
            out.append(_error("custom_validation_failed", name, name if r is False else f"{name} - {r}"))
    return out


def _convert(type_input, value):
    """ComfyUI's conversion of a widget value; combo values stay as they are."""
    if isinstance(type_input, str) and type_input in ("INT", "FLOAT", "STRING"):
        return {"INT": int, "FLOAT": float, "STRING": str}[type_input](value)
    return value


def _builtin_checks(name, info, value, ranges=True, combo=True):
    extra = info[1] if len(info) > 1 else {}
    if ranges and "min" in extra and value < extra["min"]:
        return [_error("value_smaller_than_min", name, name)]
    if ranges and "max" in extra and value > extra["max"]:
        return [_error("value_bigger_than_max", name, name)]
    if combo and isinstance(info[0], list) and value not in info[0]:
        return [_error("value_not_in_list", name, f"{name}: '{value}' not in {info[0]}")]
    return []


def validate(cls, inputs, convention):
    """The errors ComfyUI of convention reports for a node of class cls
    with prompt inputs (widget values, or [node_id, slot] links), as
    dicts with type, input_name and details. Exceptions of VALIDATE_INPUTS
    propagate (ComfyUI reports them as "Exception when validating node")."""
    declared = cls.INPUT_TYPES()
    required = declared.get("required", {})
    checked = dict(required)
    if convention == NAMED_OR_KWARGS:
        checked.update(declared.get("optional", {}))
    has_validate = hasattr(cls, "VALIDATE_INPUTS")
    named, has_kwargs = [], False
    if has_validate and convention != ALL_INPUTS:
        spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
        named = spec.args  # 'cls' included: ComfyUI does not drop it
        has_kwargs = convention == NAMED_OR_KWARGS and spec.varkw is not None

    inputs = dict(inputs)
    errors = []
    for name, info in checked.items():
        if name not in inputs:
            if name in required:
                errors.append(_error("required_input_missing", name, name))
            continue
        if _is_link(inputs[name]):
            continue
        try:
            value = inputs[name] = _convert(info[0], inputs[name])
        except (TypeError, ValueError) as err:
            errors.append(_error("invalid_input_type", name, f"{name}, {inputs[name]}, {err}"))
            continue
        if convention == ALL_INPUTS:
            found = _builtin_checks(name, info, value, combo=not has_validate)
            if not found and has_validate:
                found = _failures(_call(cls, _input_data(cls, inputs)), name)
        elif convention == NAMED:
            found = _builtin_checks(name, info, value, combo=name not in named)
        else:
            mine = name in named or has_kwargs
            found = _builtin_checks(name, info, value, ranges=not mine, combo=not mine)
        errors.extend(found)

    if convention != ALL_INPUTS and (named or has_kwargs):
        data = {k: v for k, v in _input_data(cls, inputs).items() if k in named or has_kwargs}
        results = _call(cls, data)
        for name in data:
            errors.extend(_failures(results, name))
    return errors
