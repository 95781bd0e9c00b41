-- Replicas hear binding changes at once: every change of a connection row (activate, rollback,
-- config, limits, secrets, delete) notifies channel `idplex_bindings.<schema>` with the
-- connection's id, delivered when the transaction commits. Servers LISTEN on it and rebind that
-- connection (`Store::listen_connection_changes`); polling stays as the fallback.
CREATE FUNCTION idplex_notify_connection_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('idplex_bindings.' || current_schema(), OLD.id);
    ELSE
        PERFORM pg_notify('idplex_bindings.' || current_schema(), NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER connections_notify_change
    AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION idplex_notify_connection_change();
