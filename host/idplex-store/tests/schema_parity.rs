//! The SQLite and PostgreSQL migrations describe the same schema: after migrating a fresh
//! database of each kind, both have the same tables, the same columns (name, type class,
//! nullability, primary key), the same unique and primary-key constraints, the same foreign keys
//! (with their `ON DELETE` action) and the same named indexes (columns, uniqueness, partial or
//! not). The migrations are written twice (one dialect each); this is what keeps them one schema.
//!
//! Type classes: `text`, `int` (SQLite `INTEGER`; PostgreSQL `integer`/`bigint`), `bytes`
//! (`BLOB`/`bytea`), `bool` (PostgreSQL `boolean`; SQLite `INTEGER` with `CHECK (col IN (0, 1))`),
//! `real`. CHECK constraints other than that boolean one, and defaults, are not compared.

#[allow(unused_macros)]
mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use common::TestDb;
use sqlx::Row;

#[derive(Debug, Default, PartialEq, Eq)]
struct Schema {
    /// table → column → (type class, not null, position in the primary key (0 = not in it))
    columns: BTreeMap<String, BTreeMap<String, (String, bool, i64)>>,
    /// (table, columns) of every UNIQUE constraint (explicit or inline), primary keys apart.
    uniques: BTreeSet<(String, Vec<String>)>,
    /// (table, columns, referenced table, referenced columns, on delete)
    foreign_keys: BTreeSet<(String, Vec<String>, String, Vec<String>, String)>,
    /// Named indexes (`CREATE INDEX`): name → (table, columns or expressions, unique, partial).
    indexes: BTreeMap<String, (String, Vec<String>, bool, bool)>,
}

fn sqlite_class(declared: &str, boolean: bool) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "TEXT" => "text",
        "INTEGER" if boolean => "bool",
        "INTEGER" => "int",
        "BLOB" => "bytes",
        "REAL" => "real",
        other => panic!("SQLite column type {other} has no class here: add it"),
    }
    .into()
}

fn postgres_class(data_type: &str) -> String {
    match data_type {
        "text" => "text",
        "bigint" | "integer" | "smallint" => "int",
        "bytea" => "bytes",
        "boolean" => "bool",
        "double precision" | "real" => "real",
        other => panic!("PostgreSQL column type {other} has no class here: add it"),
    }
    .into()
}

fn on_delete_sqlite(action: &str) -> String {
    action.to_ascii_uppercase()
}

fn on_delete_postgres(code: &str) -> String {
    match code {
        "a" => "NO ACTION",
        "r" => "RESTRICT",
        "c" => "CASCADE",
        "n" => "SET NULL",
        "d" => "SET DEFAULT",
        other => panic!("unknown confdeltype {other}"),
    }
    .into()
}

/// Lower-cased, whitespace-free: how an index column or expression is compared.
fn norm(expr: &str) -> String {
    expr.chars().filter(|c| !c.is_whitespace() && *c != '"').collect::<String>().to_lowercase()
}

async fn describe_sqlite(path: &std::path::Path) -> Schema {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
        .await
        .unwrap();
    let mut schema = Schema::default();
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for (table, sql) in tables {
        let flat = norm(&sql);
        let mut cols = BTreeMap::new();
        for row in sqlx::query(&format!("PRAGMA table_info(\"{table}\")")).fetch_all(&pool).await.unwrap() {
            let name: String = row.get("name");
            let declared: String = row.get("type");
            let boolean = flat.contains(&format!("check({}in(0,1))", name.to_lowercase()));
            let pk: i64 = row.get("pk");
            let not_null: i64 = row.get("notnull");
            // A PRIMARY KEY column is NOT NULL in PostgreSQL whether or not it says so.
            cols.insert(name, (sqlite_class(&declared, boolean), not_null == 1 || pk > 0, pk));
        }
        schema.columns.insert(table.clone(), cols);

        for row in sqlx::query(&format!("PRAGMA index_list(\"{table}\")")).fetch_all(&pool).await.unwrap() {
            let name: String = row.get("name");
            let unique: i64 = row.get("unique");
            let origin: String = row.get("origin");
            let partial: i64 = row.get("partial");
            let mut columns = Vec::new();
            for col in sqlx::query(&format!("PRAGMA index_xinfo(\"{name}\")")).fetch_all(&pool).await.unwrap() {
                let key: i64 = col.get("key");
                if key == 0 {
                    continue;
                }
                let cid: i64 = col.get("cid");
                let column: Option<String> = col.get("name");
                let desc: i64 = col.get("desc");
                let desc = if desc == 1 { "desc" } else { "" };
                columns.push(match column {
                    Some(c) => format!("{}{desc}", norm(&c)),
                    // An expression: take it from the CREATE INDEX text.
                    None if cid == -2 => expression_columns(&index_sql(&pool, &name).await),
                    None => "rowid".into(),
                });
            }
            columns.dedup();
            match origin.as_str() {
                "pk" => {}
                "u" => {
                    schema.uniques.insert((table.clone(), columns));
                }
                _ => {
                    schema.indexes.insert(name, (table.clone(), columns, unique == 1, partial == 1));
                }
            }
        }

        let mut fks: BTreeMap<i64, (Vec<String>, String, Vec<String>, String)> = BTreeMap::new();
        for row in sqlx::query(&format!("PRAGMA foreign_key_list(\"{table}\")")).fetch_all(&pool).await.unwrap() {
            let id: i64 = row.get("id");
            let entry = fks.entry(id).or_insert_with(|| {
                (Vec::new(), row.get::<String, _>("table"), Vec::new(), on_delete_sqlite(&row.get::<String, _>("on_delete")))
            });
            entry.0.push(row.get("from"));
            entry.2.push(row.get::<Option<String>, _>("to").unwrap_or_default());
        }
        for (_, (from, to_table, to, on_delete)) in fks {
            schema.foreign_keys.insert((table.clone(), from, to_table, to, on_delete));
        }
    }
    pool.close().await;
    schema
}

async fn index_sql(pool: &sqlx::SqlitePool, name: &str) -> String {
    sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The parenthesized column list of a `CREATE INDEX … ON t (…) [WHERE …]`, normalized, as one
/// string (expression indexes are compared by their text).
fn expression_columns(sql: &str) -> String {
    let flat = norm(sql);
    let on = flat.find("on").map_or(0, |i| i);
    let rest = &flat[on..];
    let open = rest.find('(').expect("index columns");
    let mut depth = 0;
    for (i, c) in rest[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return rest[open + 1..open + i].to_string();
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced index definition {sql}")
}

async fn describe_postgres(url: &str, schema_name: &str) -> Schema {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    let mut schema = Schema::default();
    let columns = sqlx::query(
        "SELECT c.table_name::text AS t, c.column_name::text AS col, c.data_type::text AS ty, \
                c.is_nullable::text AS nullable, \
                COALESCE((SELECT k.ordinal_position FROM information_schema.table_constraints tc \
                          JOIN information_schema.key_column_usage k \
                            ON k.constraint_name = tc.constraint_name AND k.table_schema = tc.table_schema \
                           AND k.table_name = tc.table_name \
                          WHERE tc.table_schema = c.table_schema AND tc.table_name = c.table_name \
                            AND tc.constraint_type = 'PRIMARY KEY' AND k.column_name = c.column_name), 0)::bigint AS pk \
         FROM information_schema.columns c \
         WHERE c.table_schema = $1 AND c.table_name <> '_sqlx_migrations'",
    )
    .bind(schema_name)
    .fetch_all(&pool)
    .await
    .unwrap();
    for row in columns {
        let table: String = row.get("t");
        let nullable: String = row.get("nullable");
        schema.columns.entry(table).or_default().insert(
            row.get("col"),
            (postgres_class(&row.get::<String, _>("ty")), nullable == "NO", row.get("pk")),
        );
    }

    let constraints = sqlx::query(
        "SELECT con.contype::text AS kind, rel.relname::text AS t, \
                ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) \
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols, \
                COALESCE(ref.relname::text, '') AS ref_table, \
                ARRAY(SELECT a.attname::text FROM unnest(COALESCE(con.confkey, '{}'::smallint[])) WITH ORDINALITY k(n, o) \
                      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_cols, \
                con.confdeltype::text AS on_delete \
         FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid \
         JOIN pg_namespace ns ON ns.oid = rel.relnamespace \
         LEFT JOIN pg_class ref ON ref.oid = con.confrelid \
         WHERE ns.nspname = $1 AND con.contype IN ('u', 'f') AND rel.relname <> '_sqlx_migrations'",
    )
    .bind(schema_name)
    .fetch_all(&pool)
    .await
    .unwrap();
    for row in constraints {
        let kind: String = row.get("kind");
        let table: String = row.get("t");
        let cols: Vec<String> = row.get("cols");
        if kind == "u" {
            schema.uniques.insert((table, cols.iter().map(|c| norm(c)).collect()));
        } else {
            schema.foreign_keys.insert((
                table,
                cols,
                row.get("ref_table"),
                row.get("ref_cols"),
                on_delete_postgres(&row.get::<String, _>("on_delete")),
            ));
        }
    }

    // Indexes not backing a constraint: the ones created with CREATE INDEX.
    let indexes = sqlx::query(
        "SELECT ic.relname::text AS name, rel.relname::text AS t, i.indisunique AS is_unique, \
                (i.indpred IS NOT NULL) AS partial, \
                ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                             || CASE WHEN (i.indoption[k - 1] & 1) = 1 THEN ' DESC' ELSE '' END \
                      FROM generate_series(1, i.indnkeyatts) k) AS cols \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_class rel ON rel.oid = i.indrelid JOIN pg_namespace ns ON ns.oid = rel.relnamespace \
         WHERE ns.nspname = $1 AND rel.relname <> '_sqlx_migrations' \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)",
    )
    .bind(schema_name)
    .fetch_all(&pool)
    .await
    .unwrap();
    for row in indexes {
        let cols: Vec<String> = row.get("cols");
        let cols: Vec<String> = cols.iter().map(|c| norm(c)).collect();
        // An expression index is compared by its one expression text (as on SQLite).
        let cols = if cols.iter().any(|c| c.contains('(')) { vec![cols.join(",")] } else { cols };
        schema.indexes.insert(row.get("name"), (row.get("t"), cols, row.get("is_unique"), row.get("partial")));
    }
    pool.close().await;
    schema
}

fn diff<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(what: &str, a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{what} {k:?}: only in SQLite ({v:?})")),
            Some(w) if w != v => out.push(format!("{what} {k:?}: SQLite {v:?} vs PostgreSQL {w:?}")),
            _ => {}
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            out.push(format!("{what} {k:?}: only in PostgreSQL ({w:?})"));
        }
    }
    out
}

fn diff_sets<T: Ord + std::fmt::Debug>(what: &str, a: &BTreeSet<T>, b: &BTreeSet<T>) -> Vec<String> {
    let mut out: Vec<String> = a.difference(b).map(|x| format!("{what} only in SQLite: {x:?}")).collect();
    out.extend(b.difference(a).map(|x| format!("{what} only in PostgreSQL: {x:?}")));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_describe_the_same_schema() {
    common::run_postgres(|pg| async move {
        let TestDb::Postgres { url, schema } = &pg else { unreachable!() };
        pg.open().await.close().await;
        let postgres = describe_postgres(url, schema).await;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idplex.db");
        idplex_store::Store::open(&format!("sqlite://{}", path.display())).await.unwrap().close().await;
        let sqlite = describe_sqlite(&path).await;

        assert!(sqlite.columns.len() >= 10, "introspection found the tables: {:?}", sqlite.columns.keys());
        assert!(!sqlite.indexes.is_empty() && !sqlite.foreign_keys.is_empty() && !sqlite.uniques.is_empty());

        let mut problems = Vec::new();
        let tables_a: BTreeSet<_> = sqlite.columns.keys().cloned().collect();
        let tables_b: BTreeSet<_> = postgres.columns.keys().cloned().collect();
        problems.extend(diff_sets("table", &tables_a, &tables_b));
        for table in tables_a.intersection(&tables_b) {
            problems.extend(diff(&format!("{table} column"), &sqlite.columns[table], &postgres.columns[table]));
        }
        problems.extend(diff_sets("unique constraint", &sqlite.uniques, &postgres.uniques));
        problems.extend(diff_sets("foreign key", &sqlite.foreign_keys, &postgres.foreign_keys));
        problems.extend(diff("index", &sqlite.indexes, &postgres.indexes));
        assert!(problems.is_empty(), "the migration sets disagree:\n{}", problems.join("\n"));
    })
    .await;
}

#[test]
fn expression_index_columns_are_read_from_the_create_text() {
    assert_eq!(
        expression_columns("CREATE INDEX x ON t (connection_id, lower(display_name)) WHERE a IS NULL"),
        "connection_id,lower(display_name)"
    );
}
