"""The baselines the benchmark runs side by side with IngestMonth, each as its own process.

    python bench/contenders.py naive|handwritten PARQUET DSN TABLE
"""
from __future__ import annotations

import sys
import tempfile


def naive(path: str, dsn: str, table: str) -> int:
    """What course material does: the whole month into pandas, then DataFrame.to_sql."""
    import pandas as pd
    from sqlalchemy import create_engine

    df = pd.read_parquet(path)
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg2://", 1))
    df.to_sql(table, engine, if_exists="append", index=False, chunksize=100_000)
    return len(df)


def handwritten(path: str, dsn: str, table: str) -> int:
    """The fastest straightforward script a strong engineer writes: Arrow -> CSV -> one COPY."""
    import psycopg2
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    data = pq.read_table(path)
    pg_types = {"int32": "integer", "int64": "bigint", "double": "double precision", "string": "text"}
    cols = ", ".join(f'"{f.name}" {pg_types.get(str(f.type), "timestamp")}' for f in data.schema)
    with tempfile.TemporaryFile() as buf:
        pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False))
        buf.seek(0)
        with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
            cur.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buf)
    return data.num_rows


if __name__ == "__main__":
    name, path, dsn, table = sys.argv[1:5]
    rows = {"naive": naive, "handwritten": handwritten}[name](path, dsn, table)
    print(rows)
