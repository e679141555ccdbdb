// Creates an HBase table pre-split at the given keys: what HBase's Thrift1 gateway
// cannot do (its createTable takes no split keys), done through the HBase Admin API.
// Run by nightfold/ops/presplit.py with Java's source-file launcher against the HBase
// client jars (the ones deploy/local/services fetches):
//
//   java -cp '<hbase lib>/*' CreateSplitTable.java <zk host:port> <table> <fam,fam> <base64 split key>...
//
// Exit codes: 0 created, 3 the table already exists (left as it is), 1 anything else.
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hbase.HBaseConfiguration;
import org.apache.hadoop.hbase.TableName;
import org.apache.hadoop.hbase.client.Admin;
import org.apache.hadoop.hbase.client.ColumnFamilyDescriptorBuilder;
import org.apache.hadoop.hbase.client.Connection;
import org.apache.hadoop.hbase.client.ConnectionFactory;
import org.apache.hadoop.hbase.client.TableDescriptorBuilder;

public class CreateSplitTable {
  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: CreateSplitTable <zk host:port> <table> <families> [base64 split key...]");
      System.exit(1);
    }
    String[] zk = args[0].split(":");
    TableName name = TableName.valueOf(args[1]);
    List<byte[]> splits = new ArrayList<>();
    for (int i = 3; i < args.length; i++) splits.add(Base64.getDecoder().decode(args[i]));
    Configuration conf = HBaseConfiguration.create();
    conf.set("hbase.zookeeper.quorum", zk[0]);
    conf.set("hbase.zookeeper.property.clientPort", zk.length > 1 ? zk[1] : "2181");
    conf.setInt("hbase.client.retries.number", 5);
    try (Connection connection = ConnectionFactory.createConnection(conf);
        Admin admin = connection.getAdmin()) {
      if (admin.tableExists(name)) {
        System.out.println("exists " + name);
        System.exit(3);
      }
      TableDescriptorBuilder table = TableDescriptorBuilder.newBuilder(name);
      for (String family : args[2].split(",")) {
        table.setColumnFamily(
            ColumnFamilyDescriptorBuilder.newBuilder(family.getBytes("UTF-8")).setMaxVersions(1).build());
      }
      admin.createTable(table.build(), splits.toArray(new byte[0][]));
      System.out.println("created " + name + " with " + (splits.size() + 1) + " regions");
    }
  }
}
