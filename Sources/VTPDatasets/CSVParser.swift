import VTPVocabulary
/// An RFC 4180 CSV tokenizer as a plain state machine: feed it bytes, collect records.
///
/// Quoted fields may hold commas, doubled quotes and line breaks; records end at LF or CRLF.
/// Each record carries the line it started on so errors can point at it.
///
/// Hand-written, not SwiftCSV 0.10.0 or CSV.swift 2.5.2 (the CSV packages available): manifest
/// errors name `file:line`, and neither says where it failed (SwiftCSV's `CSVParseError` carries
/// only a message, CSV.swift's `CSVError` cases no position at all) nor which line a record that
/// spans lines in a quoted field began on. Both also decode text before parsing (SwiftCSV takes a
/// `String`; CSV.swift stops at the first bad byte with `unicodeDecoding`), so a path that is not
/// valid UTF-8 could not be reported as that column of that row; here fields stay bytes until
/// `ManifestReader` checks each one.
struct CSVParser {
    /// One parsed row.
    struct Record: Equatable {
        var fields: [[UInt8]]
        /// 1-based line where the record starts.
        var line: Int
    }

    /// A syntax error at a 1-based line.
    struct SyntaxError: Error, Equatable {
        var line: Int
        var detail: String
    }

    private enum State { case fieldStart, unquoted, quoted, quoteInQuoted, afterCR }

    private var state = State.fieldStart
    private var field: [UInt8] = []
    private var fields: [[UInt8]] = []
    private var line = 1
    /// The line the record being parsed started on.
    private(set) var recordLine = 1
    private var quoteLine = 1
    private(set) var records: [Record] = []

    /// Consumes one byte.
    mutating func feed(_ byte: UInt8) throws {
        let quote: UInt8 = 0x22, comma: UInt8 = 0x2C, lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
        switch state {
        case .afterCR:
            guard byte == lf else { throw SyntaxError(line: line, detail: "carriage return not followed by a line feed") }
            line += 1
            endRecord()
        case .fieldStart:
            switch byte {
            case quote: state = .quoted; quoteLine = line
            case comma: endField()
            case lf: line += 1; endRecord()
            case cr: state = .afterCR
            default: field.append(byte); state = .unquoted
            }
        case .unquoted:
            switch byte {
            case quote: throw SyntaxError(line: line, detail: "quote inside an unquoted field (quote the whole field and double inner quotes)")
            case comma: endField()
            case lf: line += 1; endRecord()
            case cr: state = .afterCR
            default: field.append(byte)
            }
        case .quoted:
            if byte == quote { state = .quoteInQuoted } else {
                if byte == lf { line += 1 }
                field.append(byte)
            }
        case .quoteInQuoted:
            switch byte {
            case quote: field.append(quote); state = .quoted
            case comma: endField()
            case lf: line += 1; endRecord()
            case cr: state = .afterCR
            default: throw SyntaxError(line: line, detail: "unexpected character after a closing quote")
            }
        }
    }

    /// Ends the input; a final record without a line break is kept.
    mutating func finish() throws {
        switch state {
        case .quoted:
            throw SyntaxError(line: quoteLine, detail: "quoted field opened here is never closed")
        case .afterCR:
            endRecord()
        case .fieldStart:
            if !fields.isEmpty { endRecord() }
        case .unquoted, .quoteInQuoted:
            endRecord()
        }
    }

    private mutating func endField() {
        fields.append(field)
        field = []
        state = .fieldStart
    }

    private mutating func endRecord() {
        fields.append(field)
        field = []
        // A blank line is one empty field; it carries no row.
        if !(fields.count == 1 && fields[0].isEmpty) {
            records.append(Record(fields: fields, line: recordLine))
        }
        fields = []
        recordLine = line
        state = .fieldStart
    }

    /// The records completed since the last call, handed over so a streaming reader holds only
    /// those of one block.
    mutating func takeRecords() -> [Record] {
        defer { records = [] }
        return records
    }

    /// Bytes of the record not yet completed, which a streaming reader caps.
    var pendingBytes: Int { fields.reduce(field.count) { $0 + $1.count } }

    /// Parses a whole document.
    static func parse(_ bytes: some Sequence<UInt8>) throws -> [Record] {
        var parser = CSVParser()
        for b in bytes { try parser.feed(b) }
        try parser.finish()
        return parser.records
    }
}
