"""Probabilistic identity matching beside the exact rules: a Fellegi-Sunter model run by splink on DuckDB.

Each comparison (name, email, phone, company, address, postal code, city, birth date) has levels from exact
agreement down to disagreement. A level's weight is log(m/u): m is how often two records of the same customer
land on it, u how often two different customers do. u is estimated from this CRM by sampling random pairs,
the share of true matches from the exact rules; m starts from the priors below and, on a CRM large enough to
learn from, is re-estimated by expectation maximisation. Only pairs that share a blocking key are scored, so a
million records cost millions of comparisons, not 10^12.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from seg_pipeline.cleaning.normalize import name_parts, normalize_name

if TYPE_CHECKING:
    from seg_pipeline.config import IdentityConfig

# (column, label, levels): a level is (kind, threshold, m prior, u prior), from most to least similar;
# the last level is "anything else". u priors are only used where the CRM is too small to sample them.
COMPARISONS: tuple[tuple[str, str, tuple[tuple[str, float, float, float], ...]], ...] = (
    ("email_norm", "email", (
        ("exact", 0, 0.85, 0.00002),
        ("same_user", 0, 0.06, 0.0002),  # the part before '@': a domain typo or a changed provider
        # one typed slip; not Jaro-Winkler, which scores john.smith.1@x and john.smith.2@x alike
        ("damerau_levenshtein", 1, 0.05, 0.0001),
        ("else", 0, 0.04, 0.99878),
    )),
    ("phone_e164", "phone", (
        ("exact", 0, 0.80, 0.00005),
        ("levenshtein", 1, 0.04, 0.0005),
        ("else", 0, 0.16, 0.99945),
    )),
    ("company_stem", "company", (
        ("exact", 0, 0.85, 0.002),
        ("jaro_winkler", 0.92, 0.08, 0.002),
        ("jaro_winkler", 0.8, 0.03, 0.01),
        ("else", 0, 0.04, 0.986),
    )),
    ("birth_date", "birth date", (
        ("exact", 0, 0.88, 0.0001),
        ("levenshtein", 1, 0.08, 0.002),
        ("else", 0, 0.04, 0.9979),
    )),
)  # fmt: skip
# The name compares first and last name together, so swapped fields and a typo in one of them are levels.
NAME_LEVELS: tuple[tuple[str, float, float], ...] = (
    ("both exact", 0.78, 0.0002),
    ("swapped", 0.03, 0.00001),
    ("both jaro-winkler >= 0.92", 0.10, 0.0005),
    ("both jaro-winkler >= 0.85", 0.04, 0.002),
    ("surname exact", 0.02, 0.01),
    ("forename exact", 0.01, 0.02),
    ("else", 0.02, 0.96739),
)
# Address, postal code and city describe one place: as separate comparisons they would count a shared
# household three times. One comparison with levels from the same street address down to the same city.
# (label, columns it needs, SQL condition, m prior, u prior); levels whose columns the CRM lacks are left out.
LOCATION_LEVELS: tuple[tuple[str, tuple[str, ...], str, float, float], ...] = (
    ("same address and postal code", ("address_norm", "postal_norm"),
     "address_norm_l = address_norm_r and postal_norm_l = postal_norm_r", 0.70, 0.00005),
    ("same address and city", ("address_norm", "city_norm"),
     "address_norm_l = address_norm_r and city_norm_l = city_norm_r", 0.08, 0.00005),
    ("similar address, same postal code", ("address_norm", "postal_norm"),
     "jaro_winkler_similarity(address_norm_l, address_norm_r) >= 0.88 and postal_norm_l = postal_norm_r",
     0.08, 0.0001),
    ("similar address, same city", ("address_norm", "city_norm"),
     "jaro_winkler_similarity(address_norm_l, address_norm_r) >= 0.88 and city_norm_l = city_norm_r",
     0.04, 0.0001),
    ("same address", ("address_norm",), "address_norm_l = address_norm_r", 0.03, 0.0002),
    ("same postal code", ("postal_norm",), "postal_norm_l = postal_norm_r", 0.03, 0.01),
    ("same city", ("city_norm",), "city_norm_l = city_norm_r", 0.02, 0.05),
)  # fmt: skip
LOCATION_ELSE = (0.02, 0.9395)
# With identity.household_vetoes, a probabilistic merge is vetoed (the pair goes to review) when both records name a different
# person: forenames that are not alike (and not swapped with the surname), or birth dates more than two
# typed digits apart. Shared households, twins, parents and children and colleagues agree on everything
# else, and Fellegi-Sunter's independent fields cannot see that a different forename at the same address
# means a different person.
VETO_FORENAME_BELOW = 0.75  # Jaro-Winkler similarity
VETO_BIRTH_DATE_EDITS = 2  # Levenshtein distance of YYYYMMDD
# Blocking: a pair is scored when it agrees on all columns of at least one rule. Each rule pairs a
# high-cardinality key with another so no block holds a large share of the CRM.
BLOCKING_RULES: tuple[tuple[str, ...], ...] = (
    ("email_user",),
    ("phone_e164",),
    ("name_first", "name_last", "company_stem"),
    ("name_first", "name_last", "city_norm"),
    ("name_first", "postal_norm"),
    ("name_last", "postal_norm"),
    ("name_last", "birth_date"),
    ("name_first", "birth_date"),
    ("birth_date", "postal_norm"),
    ("birth_date", "city_norm"),
    ("address_norm",),
    ("birth_date", "substr(name_last, 1, 1)"),
)
# Exact agreements that make a match near-certain; splink uses them to estimate how many pairs match.
CERTAIN_RULES: tuple[tuple[str, ...], ...] = (
    ("email_norm",),
    ("phone_e164", "name_last"),
    ("name_first", "name_last", "birth_date"),
)
MATCH_INPUT_COLUMNS = (
    "name_first", "name_last", "email_norm", "email_user", "email_domain", "phone_e164", "company_stem",
    "address_norm", "postal_norm", "city_norm", "birth_date",
)  # fmt: skip


@dataclass
class PairScores:
    """Scored candidate pairs at or above the review threshold, and how the model was fitted."""

    pairs: pd.DataFrame  # left, right (row positions), match_probability, agreed, similar, disagreed, veto
    model: str  # how m, u and the match share were set
    parameters: dict[str, float]


def match_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison columns from a normalized CRM frame (see customers.normalized)."""
    out = name_parts(frame["name_norm"]) if "name_norm" in frame else pd.DataFrame(index=frame.index)
    email = frame.get("email_norm", pd.Series(pd.NA, index=frame.index, dtype="string")).astype("string")
    out["email_norm"] = email
    out["email_user"] = email.str.split("@").str[0]
    out["email_domain"] = email.str.split("@").str[-1]
    for column in ("phone_e164", "company_stem"):
        out[column] = frame[column].astype("string") if column in frame else pd.NA
    for source, column in (("address", "address_norm"), ("city", "city_norm")):
        out[column] = normalize_name(frame[source]) if source in frame else pd.NA
    if "postal_code" in frame:
        out["postal_norm"] = normalize_name(frame["postal_code"]).str.replace(" ", "", regex=False)
    else:
        out["postal_norm"] = pd.NA
    if "birth_date" in frame:
        born = pd.to_datetime(frame["birth_date"], errors="coerce")
        out["birth_date"] = born.dt.strftime("%Y%m%d").astype("string")
    else:
        out["birth_date"] = pd.NA
    out = out.reindex(columns=list(MATCH_INPUT_COLUMNS))
    return out.astype("string").reset_index(drop=True)


def score_pairs(frame: pd.DataFrame, cfg: IdentityConfig) -> PairScores:
    """Candidate pairs of ``frame`` (normalized CRM rows) scored by a Fellegi-Sunter model in splink."""
    columns = match_columns(frame)
    usable = [c for c in MATCH_INPUT_COLUMNS if columns[c].notna().any()]
    if len(columns) < 2 or not _comparisons(usable):
        return PairScores(_no_pairs(), "not run: fewer than two records or nothing to compare", {})

    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI
    from splink.blocking_rule_library import CustomRule

    logging.getLogger("splink").setLevel(logging.ERROR)  # its hints are for notebooks
    columns.insert(0, "unique_id", np.arange(len(columns)))
    blocking = [block_on(*rule) for rule in BLOCKING_RULES if set(map(_column_of, rule)) <= set(usable)]
    if {"name_first", "name_last"} <= set(usable):  # first and last name swapped in one of the records
        blocking.append(CustomRule("l.name_first = r.name_last and l.name_last = r.name_first"))
    if not blocking:
        return PairScores(_no_pairs(), "not run: no blocking key present", {})
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.CustomComparison(levels, output_column_name=name) for name, levels in _comparisons(usable)
        ],
        blocking_rules_to_generate_predictions=blocking,
        probability_two_random_records_match=_prior_match_share(len(columns)),
        retain_intermediate_calculation_columns=True,  # the per-field weights say which fields agreed
        retain_matching_columns=False,
    )
    import duckdb

    # an in-memory database of its own: the PII never reaches the warehouse file
    # no progress bar: DuckDB draws one on stdout for queries over two seconds, into run logs and the CLI
    connection = duckdb.connect(":memory:", config={"threads": cfg.threads} if cfg.threads else {})
    connection.execute("set enable_progress_bar = false")
    try:
        linker = Linker(DuckDBAPI(connection).register(columns), settings, log_level=logging.ERROR)
        model = _fit(linker, columns, usable, cfg, block_on)
        pairs = linker.inference.predict(
            threshold_match_probability=cfg.review_threshold
        ).as_pandas_dataframe()
        fitted = linker.misc.save_model_to_json()
        vetoes = _vetoes(connection, columns, pairs) if cfg.household_vetoes else [""] * len(pairs)
    finally:
        connection.close()
    described = _described(pairs, _exact_weights(fitted))
    described["veto"] = vetoes
    return PairScores(described, model, _parameters(fitted))


def _vetoes(connection, columns: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """Per scored pair, why it must not be merged however high its probability ("" when it may be)."""
    if not len(pairs):
        return []
    scored = pairs[["unique_id_l", "unique_id_r"]].reset_index(names="pair")
    connection.register("veto_records", columns)
    connection.register("veto_pairs", scored)
    different_forename = f"""
        l.name_first is not null and r.name_first is not null
        and jaro_winkler_similarity(l.name_first, r.name_first) < {VETO_FORENAME_BELOW}
        and not (jaro_winkler_similarity(l.name_first, r.name_last) >= 0.88
                 and jaro_winkler_similarity(l.name_last, r.name_first) >= 0.88)
        and not (length(l.name_first) = 1 and starts_with(r.name_first, l.name_first))
        and not (length(r.name_first) = 1 and starts_with(l.name_first, r.name_first))"""
    different_birth = f"""
        l.birth_date is not null and r.birth_date is not null
        and levenshtein(l.birth_date, r.birth_date) > {VETO_BIRTH_DATE_EDITS}"""
    reasons = connection.execute(
        f"""
        select p.pair,
               concat_ws('; ', case when {different_forename} then 'different forenames' end,
                               case when {different_birth} then 'different birth dates' end) as veto
        from veto_pairs p
        join veto_records l on l.unique_id = p.unique_id_l
        join veto_records r on r.unique_id = p.unique_id_r
        order by p.pair
        """
    ).df()
    return reasons["veto"].fillna("").tolist()


def _fit(linker, columns: pd.DataFrame, usable: list[str], cfg: IdentityConfig, block_on) -> str:
    """Estimate the match share and u from this CRM; m by EM when it has enough records. Returns how."""
    records = len(columns)
    if records < cfg.min_records_to_estimate:
        return f"priors (fewer than {cfg.min_records_to_estimate:,} records to estimate from)"
    certain = [rule for rule in CERTAIN_RULES if set(rule) <= set(usable) and _has_pairs(columns, rule)]
    if certain:  # with no certain pair at all the prior match share stays
        rules = [block_on(*rule) for rule in certain]
        linker.training.estimate_probability_two_random_records_match(rules, recall=cfg.exact_rule_recall)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=cfg.u_sample_pairs, seed=cfg.seed, num_chunks=1
    )
    if records < cfg.min_records_to_train:
        return f"priors for m; u and match share estimated from {records:,} records"
    # EM sessions: each fixes what its block agrees on and learns the other fields. Tight blocks, so a
    # million records train on thousands of pairs, not billions.
    third = [c for c in ("birth_date", "postal_norm", "company_stem", "city_norm") if c in usable][:1]
    sessions = [("name_first", "name_last", *third)]
    sessions += [(c,) for c in ("email_user", "phone_e164", "birth_date") if c in usable][:1]
    trained = [s for s in sessions if set(s) <= set(usable) and _has_pairs(columns, s)]
    for session in trained:
        linker.training.estimate_parameters_using_expectation_maximisation(block_on(*session))
    if not trained:
        return f"priors for m (no pairs to train on); u and match share estimated from {records:,} records"
    return f"trained by EM on {records:,} records ({len(trained)} sessions)"


def _has_pairs(columns: pd.DataFrame, keys: tuple[str, ...]) -> bool:
    """Whether two records agree on all of ``keys`` (splink refuses to train on a block without pairs)."""
    present = columns[list(keys)].dropna()
    return bool(present.duplicated().any())


def _column_of(expression: str) -> str:
    """The column a blocking expression reads: "substr(name_last, 1, 1)" reads name_last."""
    return expression.split("(")[1].split(",")[0] if "(" in expression else expression


def _prior_match_share(records: int) -> float:
    """Before estimation: as if one record in a hundred had a duplicate."""
    return min(0.5, 0.01 / max(records - 1, 1))


def _comparisons(usable: list[str]) -> list[tuple[str, list]]:
    import splink.comparison_level_library as cll

    out = []
    if {"name_first", "name_last"} & set(usable):
        first, last = "name_first", "name_last"
        levels = [
            cll.And(cll.NullLevel(first), cll.NullLevel(last)),
            cll.And(cll.ExactMatchLevel(first), cll.ExactMatchLevel(last)),
            cll.ColumnsReversedLevel(first, last, symmetrical=True),
            cll.And(cll.JaroWinklerLevel(first, 0.92), cll.JaroWinklerLevel(last, 0.92)),
            cll.And(cll.JaroWinklerLevel(first, 0.85), cll.JaroWinklerLevel(last, 0.85)),
            cll.ExactMatchLevel(last),
            cll.ExactMatchLevel(first),
            cll.ElseLevel(),
        ]
        for level, (label, m, u) in zip(levels[1:], NAME_LEVELS, strict=True):
            level.configure(m_probability=m, u_probability=u, label_for_charts=label)
        out.append(("name", levels))
    place = [c for c in ("address_norm", "postal_norm", "city_norm") if c in usable]
    if place:
        levels = [cll.And(*(cll.NullLevel(c) for c in place)) if len(place) > 1 else cll.NullLevel(place[0])]
        for label, needs, sql, m, u in LOCATION_LEVELS:
            if set(needs) <= set(place):
                levels.append(cll.CustomLevel(sql, label).configure(m_probability=m, u_probability=u))
        m, u = LOCATION_ELSE
        levels.append(cll.ElseLevel().configure(m_probability=m, u_probability=u))
        out.append(("location", levels))
    for column, label, specs in COMPARISONS:
        if column not in usable:
            continue
        levels = [cll.NullLevel(column)]
        for kind, threshold, m, u in specs:
            level = _level(cll, kind, column, threshold)
            levels.append(level.configure(m_probability=m, u_probability=u))
        out.append((label.replace(" ", "_"), levels))
    return out


def _level(cll, kind: str, column: str, threshold: float):
    """One comparison level of COMPARISONS."""
    if kind == "exact":
        return cll.ExactMatchLevel(column)
    if kind == "same_user":
        return cll.ExactMatchLevel("email_user")
    if kind == "jaro_winkler":
        return cll.JaroWinklerLevel(column, threshold)
    if kind == "levenshtein":
        return cll.LevenshteinLevel(column, int(threshold))
    if kind == "damerau_levenshtein":
        # Jaro-Winkler first: DuckDB's Damerau-Levenshtein is ~50x slower and runs only on the few pairs the
        # cheap test lets through (any pair one typed slip apart passes it)
        return cll.CustomLevel(
            f"jaro_winkler_similarity({column}_l, {column}_r) >= 0.9 and "
            f"damerau_levenshtein({column}_l, {column}_r) <= {int(threshold)}",
            f"{column}: one typed slip apart",
        )
    return cll.ElseLevel()


def _described(pairs: pd.DataFrame, exact_weights: dict[str, float]) -> pd.DataFrame:
    """left/right positions, probability, and which fields agreed, were similar or disagreed.

    splink returns each comparison's weight (``mw_<field>``): the exact level's weight means agreement, a
    smaller positive one a similar value, a negative one disagreement, zero a missing value.
    """
    agreed, similar, disagreed = ([[] for _ in range(len(pairs))] for _ in range(3))
    for field, exact in exact_weights.items():
        column = f"mw_{field}"
        if column not in pairs:
            continue
        label = field.replace("_", " ")
        for i, weight in enumerate(pairs[column].astype(float).fillna(0.0).to_numpy()):
            if weight < 0:
                disagreed[i].append(label)
            elif weight > 0:
                (agreed if math.isclose(weight, exact, rel_tol=1e-6) else similar)[i].append(label)
    return pd.DataFrame(
        {
            "left": pairs["unique_id_l"].astype(np.int64).to_numpy(),
            "right": pairs["unique_id_r"].astype(np.int64).to_numpy(),
            "match_probability": pairs["match_probability"].astype(float).to_numpy(),
            "agreed": [", ".join(a) for a in agreed],
            "similar": [", ".join(v) for v in similar],
            "disagreed": [", ".join(d) for d in disagreed],
        }
    )


def _exact_weights(model: dict) -> dict[str, float]:
    """Per comparison, the weight log2(m/u) of its first non-null level (exact agreement)."""
    out = {}
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                out[comparison["output_column_name"]] = math.log2(
                    level["m_probability"] / level["u_probability"]
                )
                break
    return out


def _parameters(model: dict) -> dict[str, float]:
    """The fitted model for the run's metadata: the match share and log2(m/u) per comparison level."""
    out = {"probability_two_random_records_match": float(model["probability_two_random_records_match"])}
    for comparison in model["comparisons"]:
        for level in comparison["comparison_levels"]:
            m, u = level.get("m_probability"), level.get("u_probability")
            if level.get("is_null_level") or not m or not u:
                continue
            label = (
                f"{comparison['output_column_name']}: {level.get('label_for_charts', level['sql_condition'])}"
            )
            out[label] = round(math.log2(m / u), 3)
    return out


def _no_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "left": pd.Series(dtype=np.int64),
            "right": pd.Series(dtype=np.int64),
            "match_probability": pd.Series(dtype=float),
            "agreed": pd.Series(dtype=object),
            "similar": pd.Series(dtype=object),
            "disagreed": pd.Series(dtype=object),
            "veto": pd.Series(dtype=object),
        }
    )
