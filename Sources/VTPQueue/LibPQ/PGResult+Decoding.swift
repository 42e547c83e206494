import Foundation

/// Typed reads that turn unexpected values into `LedgerError.malformedRow` naming the column.
extension PGResult {
    func string(_ row: Int, _ column: Int) throws -> String {
        guard let value = value(row, column) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "text", value: nil)
        }
        return value
    }

    func int64(_ row: Int, _ column: Int) throws -> Int64 {
        guard let text = value(row, column), let number = Int64(text) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "integer", value: value(row, column))
        }
        return number
    }

    func int32(_ row: Int, _ column: Int) throws -> Int32 {
        guard let text = value(row, column), let number = Int32(text) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "integer", value: value(row, column))
        }
        return number
    }

    func optionalInt64(_ row: Int, _ column: Int) throws -> Int64? {
        value(row, column) == nil ? nil : try int64(row, column)
    }

    func double(_ row: Int, _ column: Int) throws -> Double {
        guard let text = value(row, column), let number = Double(text) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "number", value: value(row, column))
        }
        return number
    }

    func bool(_ row: Int, _ column: Int) throws -> Bool {
        switch value(row, column) {
        case "t": return true
        case "f": return false
        case let other: throw LedgerError.malformedRow(column: columnName(column), expected: "boolean", value: other)
        }
    }

    /// A timestamp selected as `extract(epoch from ...)`.
    func date(_ row: Int, _ column: Int) throws -> Date {
        Date(timeIntervalSince1970: try double(row, column))
    }

    func optionalDate(_ row: Int, _ column: Int) throws -> Date? {
        value(row, column) == nil ? nil : try date(row, column)
    }

    func uuid(_ row: Int, _ column: Int) throws -> UUID {
        guard let text = value(row, column), let uuid = UUID(uuidString: text) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "uuid", value: value(row, column))
        }
        return uuid
    }

    func enumValue<E: RawRepresentable>(_ row: Int, _ column: Int, as type: E.Type) throws -> E where E.RawValue == String {
        guard let text = value(row, column), let parsed = E(rawValue: text) else {
            throw LedgerError.malformedRow(column: columnName(column), expected: "\(E.self)", value: value(row, column))
        }
        return parsed
    }
}
