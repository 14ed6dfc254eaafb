-- The awkward cases: every one must round-trip exactly.
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;
CREATE SCHEMA "Odd Schema";
COMMENT ON SCHEMA app IS 'application data';
CREATE TYPE app.doc_state AS ENUM ('draft', 'published', 'archived', 'été');
CREATE DOMAIN app.percent AS numeric(5,2) CHECK (VALUE >= 0 AND VALUE <= 100);
CREATE TYPE app.address AS (street text, zip varchar(10), geo point);
CREATE SEQUENCE app.invoice_no START 1000 INCREMENT 7;
-- Set but not yet called (is_called false: the next nextval returns 77), and never called.
CREATE SEQUENCE app.fresh START 50;
SELECT setval('app.fresh', 77, false);
CREATE SEQUENCE app.unused START 9;

CREATE TABLE app.tenants (
  id bigserial PRIMARY KEY,
  name citext UNIQUE NOT NULL,
  created timestamptz NOT NULL,
  settings jsonb,
  CONSTRAINT name_len CHECK (length(name::text) > 0)
);
COMMENT ON TABLE app.tenants IS 'tenants of Amber';
COMMENT ON COLUMN app.tenants.settings IS 'free-form settings';

CREATE TABLE app.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id bigint NOT NULL REFERENCES app.tenants(id) ON DELETE CASCADE,
  email text NOT NULL,
  quota app.percent,
  tags text[],
  scores integer[][],
  home app.address,
  password_hash bytea,
  balance numeric(30,10),
  tiny real,
  big double precision,
  session interval,
  last_seen timestamp,
  birthday date,
  wake time,
  flags bit varying(16),
  ip inet,
  notes text
);
CREATE INDEX users_email_idx ON app.users (lower(email));

CREATE TABLE app.documents (
  id bigint PRIMARY KEY DEFAULT nextval('app.invoice_no'),
  tenant_id bigint REFERENCES app.tenants(id),
  state app.doc_state NOT NULL DEFAULT 'draft',
  minio_key text NOT NULL,
  milvus_id bigint,
  body_oid oid,
  updated timestamptz
);

CREATE TABLE app.events (
  id bigserial,
  at timestamptz NOT NULL,
  payload jsonb,
  PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');

CREATE TABLE "Odd Schema"."Mixed Case ""Quoted"" Table" ("Weird Col" text, "select" int);

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated := coalesce(NEW.updated, '2000-01-01'::timestamptz); RETURN NEW; END $$;
CREATE TRIGGER documents_touch BEFORE INSERT OR UPDATE ON app.documents FOR EACH ROW EXECUTE FUNCTION app.touch();

CREATE VIEW app.published AS SELECT id, minio_key FROM app.documents WHERE state = 'published';
CREATE MATERIALIZED VIEW app.doc_counts AS SELECT tenant_id, count(*) AS n FROM app.documents GROUP BY tenant_id;

INSERT INTO app.tenants (name, created, settings) VALUES
  ('Acme', '2024-02-29 12:34:56.789012+00', '{"plan": "gold", "limits": {"docs": 1000}, "emoji": "🚀"}'),
  ('acme-lower-DIFFERENT', '1970-01-01 00:00:00+00', 'null'),
  ('Ünïcödé ✓', 'infinity', '[1, 2.5, "three", true, null]');

INSERT INTO app.users (tenant_id, email, quota, tags, scores, home, password_hash, balance, tiny, big,
  session, last_seen, birthday, wake, flags, ip, notes)
SELECT 1 + (i % 3), 'user' || i || '@example.com', (i % 100)::numeric / 1.5,
  ARRAY['a', 'b c', NULL, 'quote"d', ''], ARRAY[[i, 2], [3, 4]],
  ROW('Main St ' || i, '12345', point(i, -i))::app.address,
  decode(md5(i::text), 'hex') || '\x00ff'::bytea,
  123456789.0123456789 * i, 1.5e-10, -1.7976931348623157e308,
  make_interval(years => 1, months => -2, days => i, secs => 0.000001),
  '2038-01-19 03:14:08', '0001-01-01', '23:59:59.999999', B'1010110', '192.168.0.1/24',
  E'tab\there, newline\nthere, bell \u0007, emoji 😀, backslash \\ and quote '''
FROM generate_series(1, 500) AS i;
INSERT INTO app.users (tenant_id, email, notes) VALUES (2, 'null-fields@example.com', NULL);

INSERT INTO app.documents (tenant_id, state, minio_key, milvus_id, body_oid)
SELECT 1 + (i % 3), (ARRAY['draft', 'published', 'archived', 'été'])[1 + i % 4]::app.doc_state,
  'tenant-' || (1 + i % 3) || '/doc ' || i || '+%?#.pdf', 440000000000000000 + i,
  CASE WHEN i <= 3 THEN lo_from_bytea(0, convert_to('large object ' || i || repeat('x', 10000), 'UTF8')) END
FROM generate_series(1, 300) AS i;
SELECT nextval('app.invoice_no') FROM generate_series(1, 5);

INSERT INTO app.events (at, payload)
SELECT '2025-06-01'::timestamptz + (i || ' days')::interval, jsonb_build_object('i', i)
FROM generate_series(1, 400) AS i;
INSERT INTO "Odd Schema"."Mixed Case ""Quoted"" Table" VALUES ('x', 1), (NULL, NULL);
REFRESH MATERIALIZED VIEW app.doc_counts;

DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'amber_app') THEN
    CREATE ROLE amber_app LOGIN PASSWORD 'app-secret';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'amber_readonly') THEN
    CREATE ROLE amber_readonly;
  END IF;
END $$;
ALTER ROLE amber_app LOGIN;
COMMENT ON ROLE amber_app IS 'the application';
GRANT USAGE ON SCHEMA app TO amber_readonly;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO amber_readonly;
GRANT SELECT, INSERT, UPDATE ON app.documents TO amber_app;
GRANT amber_readonly TO amber_app;
-- Comments on more than tables, owners other than the superuser, privileges of every kind.
COMMENT ON COLUMN app.users.email IS 'login, lower-cased';
COMMENT ON FUNCTION app.touch() IS 'sets updated';
COMMENT ON TYPE app.doc_state IS 'document states';
COMMENT ON SEQUENCE app.invoice_no IS 'invoice numbers';
COMMENT ON VIEW app.published IS 'what readers see';
COMMENT ON INDEX app.users_email_idx IS 'case-insensitive';
COMMENT ON CONSTRAINT name_len ON app.tenants IS 'never empty';
COMMENT ON SCHEMA "Odd Schema" IS 'quoted';
ALTER ROLE amber_readonly CONNECTION LIMIT 7;
ALTER ROLE amber_app SET statement_timeout TO '5min';
ALTER SCHEMA "Odd Schema" OWNER TO amber_app;
ALTER TABLE "Odd Schema"."Mixed Case ""Quoted"" Table" OWNER TO amber_app;
ALTER TABLE app.documents OWNER TO amber_app;
ALTER VIEW app.published OWNER TO amber_readonly;
ALTER SEQUENCE app.fresh OWNER TO amber_app;
ALTER FUNCTION app.touch() OWNER TO amber_app;
ALTER TYPE app.address OWNER TO amber_app;
GRANT USAGE, SELECT ON SEQUENCE app.invoice_no TO amber_app;
GRANT UPDATE (notes), REFERENCES (email) ON app.users TO amber_app;
REVOKE EXECUTE ON FUNCTION app.touch() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.touch() TO amber_readonly;
REVOKE USAGE ON TYPE app.doc_state FROM PUBLIC;
GRANT USAGE ON TYPE app.doc_state TO amber_app;
GRANT CREATE ON SCHEMA "Odd Schema" TO amber_readonly;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO amber_readonly;
ALTER DEFAULT PRIVILEGES FOR ROLE amber_app REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
DO $$ DECLARE o oid; BEGIN
  SELECT min(oid) INTO o FROM pg_largeobject_metadata;
  EXECUTE format('ALTER LARGE OBJECT %s OWNER TO amber_app', o);
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO amber_readonly', o);
END $$;
