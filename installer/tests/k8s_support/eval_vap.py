"""Evaluates a ValidatingAdmissionPolicy's CEL on admission requests, as the API server
would: matchConditions, then variables in order, then validations in order (the first
false one denies). Run by tests/runtimeclass_manifests.rs with the tools venv's python
(cel-python, from `make deps`); no cluster needed.

stdin:  {"spec": <the policy's spec>, "requests": [{"request", "object", "oldObject"}, ...]}
stdout: [{"result": "not-matched" | "allowed" | "denied" | "error", "validation": i,
          "message": "...", "error": "..."}, ...]

cel-python is not the API server's cel-go: it checks the expressions' syntax and logic,
not Kubernetes' type checking or cost limits.
"""

import json
import sys

import celpy
from celpy import celtypes


def main():
    doc = json.load(sys.stdin)
    spec = doc["spec"]
    env = celpy.Environment()
    programs = {}

    def program(expr):
        if expr not in programs:
            programs[expr] = env.program(env.compile(expr))
        return programs[expr]

    def truthy(value):
        return value is True or value == celtypes.BoolType(True)

    results = []
    for case in doc["requests"]:
        activation = {k: celpy.json_to_cel(case[k]) for k in ("request", "object", "oldObject")}
        try:
            matched = all(
                truthy(program(c["expression"]).evaluate(activation))
                for c in spec.get("matchConditions", [])
            )
            if not matched:
                results.append({"result": "not-matched"})
                continue
            variables = celtypes.MapType({})
            for v in spec.get("variables", []):
                value = program(v["expression"]).evaluate(dict(activation, variables=variables))
                variables = celtypes.MapType(dict(variables, **{celtypes.StringType(v["name"]): value}))
            activation["variables"] = variables
            result = {"result": "allowed"}
            for i, validation in enumerate(spec.get("validations", [])):
                if truthy(program(validation["expression"]).evaluate(activation)):
                    continue
                message = validation.get("message", "")
                if "messageExpression" in validation:
                    message = str(program(validation["messageExpression"]).evaluate(activation))
                result = {"result": "denied", "validation": i, "message": message}
                break
            results.append(result)
        except Exception as e:  # an evaluation error: failurePolicy decides, the test sees it
            results.append({"result": "error", "error": repr(e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
